"""The ``cellbox-nb`` command line: a click group with one function per command.

Commands parse their options, call the package, and print; no numerics live here. Output: ``--json`` prints one
JSON object on stdout, everything else goes to stderr. Exit codes: 0 ok, 1 internal error, 2 usage or config error,
3 invalid input data, 4 numerical failure (see cellbox_nb.errors).
"""

from __future__ import annotations

from importlib import metadata

import click

from ._common import (check_output_path, info, json_option, out_option, print_json, run_command,
                      seed_option)


def _version() -> str:
    try:
        return metadata.version("cellbox-nb")
    except metadata.PackageNotFoundError:
        from cellbox_nb import __version__

        return __version__


@click.group(name="cellbox-nb", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="cellbox-nb")
def cli():
    """Learn CellBox networks dx/dt = alpha*tanh(W x - u) - x from perturbation data."""


@cli.command()
@json_option
@run_command
def networks(as_json):
    """List the built-in ground-truth networks."""
    from cellbox_nb.data.network import BUILTIN, list_networks

    rows = [{"name": net.name, "n": net.n, "edges": net.n_edges, "positive": net.n_positive,
             "negative": net.n_negative, "alpha": float(net.alpha[0]), "kind": net.kind,
             "description": net.description, "file": BUILTIN[net.name].file} for net in list_networks()]
    if as_json:
        print_json({"networks": rows})
        return
    click.echo(f"{'name':<6} {'n':>3} {'edges (+/-)':>12} {'alpha':>6}  description")
    for r in rows:
        edges = f"{r['edges']} ({r['positive']}/{r['negative']})"
        click.echo(f"{r['name']:<6} {r['n']:>3} {edges:>12} {r['alpha']:>6g}  {r['kind']}: {r['description']}")


@cli.command()
@click.option("--network", "network", required=True, metavar="NAME|CSV|random:N",
              help="Built-in network name (see `cellbox-nb networks`), a network CSV file, or random:N.")
@click.option("--conditions", type=click.IntRange(min=1), default=20, show_default=True,
              help="Number of perturbation conditions M.")
@click.option("--times", type=click.IntRange(min=1), default=5, show_default=True,
              help="Number of observation times T (t = tfinal*k/T, k = 1..T).")
@click.option("--tfinal", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Last observation time.")
@click.option("--noise", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Standard deviation of the additive Gaussian noise.")
@click.option("--max-targets", type=click.IntRange(min=1), default=2, show_default=True,
              help="Most nodes perturbed per condition.")
@click.option("--method", type=click.Choice(["lhs", "uniform"]), default="lhs", show_default=True,
              help="How perturbation levels in (0, 1] are drawn.")
@seed_option
@out_option
@json_option
@run_command
def simulate(network, conditions, times, tfinal, noise, max_targets, method, seed, out, overwrite, as_json):
    """Simulate a perturbation-response dataset from a ground-truth network and write it as HDF5."""
    from cellbox_nb.data.dataset import simulate as simulate_dataset
    from cellbox_nb.data.dataset import write_dataset
    from cellbox_nb.data.network import load_network

    check_output_path(out, overwrite)
    net = load_network(network, seed=seed)
    ds = simulate_dataset(net, conditions=conditions, times=times, tfinal=tfinal, noise=noise,
                          max_targets=max_targets, seed=seed, method=method)
    write_dataset(out, ds, overwrite=overwrite)
    summary = {"path": out, "network": net.name, "n": net.n, "conditions": conditions, "times": times,
               "tfinal": tfinal, "noise": noise, "max_targets": max_targets, "method": method, "seed": seed,
               "y_min": float(ds.Y.min()), "y_max": float(ds.Y.max())}
    if as_json:
        print_json(summary)
    else:
        info(f"wrote {out}: network {net.name} (n={net.n}), {conditions} conditions x {times} times "
             f"(t = {ds.t[0]:g} .. {ds.t[-1]:g}), noise {noise:g}, seed {seed}; "
             f"Y in [{summary['y_min']:.3g}, {summary['y_max']:.3g}]")


def main(argv=None):
    """Console-script entry point (``cellbox-nb``)."""
    cli.main(args=argv, prog_name="cellbox-nb")


if __name__ == "__main__":
    main()
