"""The ``cellbox-nb`` command line: a click group with one function per command.

Commands parse their options, call the package, and print; no numerics live here. Output: ``--json`` prints one
JSON object on stdout, everything else goes to stderr. Exit codes: 0 ok, 1 internal error, 2 usage or config error,
3 invalid input data, 4 numerical failure (see cellbox_nb.errors).
"""

from __future__ import annotations

import sys
import time
from importlib import metadata

import click

from cellbox_nb.errors import ConfigError

from . import _startup_done
from ._common import (catch_stop_signals, check_output_path, info, json_option, one_line, out_option, print_json,
                      run_command, seed_option)
from .bench import bench
from .sweep import sweep


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


cli.add_command(bench)
cli.add_command(sweep)


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


TRAIN_JSON_KEYS = ("mae_train", "mae_val", "mae_test", "pearson_test", "pearson_W", "pearson_alpha", "auroc", "aupr",
                   "epochs", "wall_s", "status")


@cli.command()
@click.option("--data", "data", default=None, metavar="NAME|DIR|FILE.h5",
              help="Built-in dataset (skmel133), CellBox data folder (pert.csv, expr.csv, node_Index.csv), or HDF5 "
                   "dataset (from `cellbox-nb simulate`). Default: simulate the config's network.")
@click.option("--network", "network", default=None, metavar="NAME|CSV|random:N",
              help="Network to simulate when no --data is given (default: LI, the built-in default).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="fit.h5", show_default=True,
              help="Results file (HDF5).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Config file (YAML, JSON or TOML) with training keys.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one config key (repeatable).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs (config key epochs).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate (config key lr).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of init and batch order (config key seed).")
@click.option("--partition", type=click.Choice(["random", "loo", "loo_with_singles", "single_to_combo"]), default=None,
              help="Test-set protocol (config key partition).")
@click.option("--drug", default=None, metavar="NAME|INDEX",
              help="Left-out drug of the loo partitions: node name or index among the perturbed nodes (config key drug).")
@click.option("--resume", is_flag=True, help="Continue the interrupted fit in --out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
@json_option
@run_command
def train(data, network, out, config_file, overrides, epochs, lr, seed, partition, drug, resume, overwrite, quiet,
          as_json):
    """Learn W and alpha from perturbation data; write one HDF5 results file.

    Exit codes: 0 ok, 2 usage/config error (an output path that cannot be written included), 3 invalid data, 4
    numerical failure, 75 interrupted by SIGTERM, SIGUSR1 or Ctrl-C after writing a checkpoint (continue with
    --resume and the same options), 130 a second Ctrl-C (stops at once).
    """
    stop_requested = catch_stop_signals()  # first thing: a signal during the imports and data loading is kept too
    from cellbox_nb.fit.mpi import abort_on_error, from_environment

    parallel = from_environment()  # started by mpirun with N > 1 ranks: split the conditions across them
    with abort_on_error(parallel):  # MPI ranks: one report of an error, and none left waiting for a failed rank
        _train(parallel, data, network, out, config_file, overrides, epochs, lr, seed, partition, drug, resume,
               overwrite, quiet, as_json, stop_requested)


def _train(parallel, data, network, out, config_file, overrides, epochs, lr, seed, partition, drug, resume,
           overwrite, quiet, as_json, stop_requested):
    import os

    from cellbox_nb.data.dataset import simulate as simulate_dataset
    from cellbox_nb.data.load import load_data
    from cellbox_nb.fit.config import load_config_file, parse_set, resolve
    from cellbox_nb.fit.train import train as run_train

    layers = [load_config_file(config_file) if config_file else {}]
    cli_layer = {k: v for k, v in (("network", network), ("epochs", epochs), ("lr", lr), ("seed", seed),
                                   ("partition", partition), ("drug", drug)) if v is not None}
    cfg = resolve(*layers, parse_set(overrides), cli_layer)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if resume:
        if not os.path.exists(out):
            raise ConfigError(f"--resume: '{out}' does not exist")
    else:
        check_output_path(out, overwrite, inputs=(data, config_file))
    if data is not None:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = load_data(data, t_end=cfg["tfinal"])
        for w in caught if parallel is None or parallel.is_root else ():  # (every MPI rank reads the same data)
            info(f"warning: {w.message}")
    else:
        ds = simulate_dataset(cfg["network"], conditions=cfg["conditions"], times=cfg["times"],
                              tfinal=cfg["tfinal"], noise=cfg["noise"], max_targets=cfg["max_targets"],
                              seed=cfg["data_seed"])
    show = not quiet and sys.stderr.isatty() and (parallel is None or parallel.is_root)
    last = [0.0]

    def progress(epoch, total, train_loss, val_loss):
        now = time.monotonic()
        if show and (now - last[0] > 0.5 or epoch == total):
            last[0] = now
            click.echo(f"\repoch {epoch}/{total}  train {train_loss:.3e}  val {val_loss:.3e}", err=True, nl=False)

    res = run_train(ds, cfg, out, resume=resume, progress=progress,
                    stop_requested=stop_requested, parallel=parallel,
                    check_data=data is not None, new_file=not (resume or overwrite))
    if parallel is not None and not parallel.is_root:
        return
    if show:
        click.echo("", err=True)
    metrics = res["metrics"] or {}
    if metrics.get("failed_predictions"):
        info(f"warning: with the fitted parameters the solve failed on {metrics['failed_predictions']} of "
             f"{res['dataset'].M} conditions (their predictions are NaN); the metrics leave them out")
    summary = {k: metrics.get(k) for k in TRAIN_JSON_KEYS + ("partition", "drug")}
    summary["out"] = out
    if as_json:
        print_json(summary)
    else:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
                          if k != "out")
        if res.get("already_ended"):
            info(f"nothing to resume: the fit in {out} had already ended; unchanged: {shown}")
        else:
            info(f"wrote {out}: {shown}")


@cli.command()
@click.option("--network", "network", default="GSD", show_default=True, metavar="NAME|CSV|random:N",
              help="Network whose simulated data the gradient is checked on.")
@seed_option
@click.option("--conditions", type=click.IntRange(min=1), default=8, show_default=True, help="Conditions M.")
@click.option("--times", type=click.IntRange(min=1), default=5, show_default=True, help="Observation times T.")
@click.option("--loss", type=click.Choice(["mae", "mse"]), default="mae", show_default=True)
@click.option("--directions", type=click.IntRange(min=1), default=3, show_default=True,
              help="Random directions for the forward-sensitivity and finite-difference checks.")
@click.option("--rtol", type=click.FloatRange(min=0, min_open=True), default=1e-10, show_default=True,
              help="Tolerance of the gradient under test (rtol = atol).")
@click.option("--adjoint", type=click.Choice(["interpolating", "discrete"]), default="interpolating",
              show_default=True, help="Which adjoint to check (see loss_and_grad).")
@click.option("--adjoint-integrator", type=click.Choice(["auto", "dop853", "tsit5"]), default="auto",
              show_default=True, help="Integrator of lam in the interpolating adjoint (see loss_and_grad).")
@click.option("--corrupt", type=float, default=0.0, hidden=True,
              help="Self-test of the checker: scale the adjoint gradient by (1 + CORRUPT).")
@json_option
@run_command
def gradcheck(network, seed, conditions, times, loss, directions, rtol, adjoint, adjoint_integrator, corrupt,
              as_json):
    """Validate the adjoint gradient against forward sensitivities, finite differences and the Taylor test.

    Exit code 4 when the check fails.
    """
    import numpy as np

    import cellbox_nb as cb
    from cellbox_nb.data.dataset import simulate as simulate_dataset
    from cellbox_nb.data.network import load_network
    from cellbox_nb.errors import EXIT_NUMERICAL
    from cellbox_nb.gradcheck import run_gradcheck

    net = load_network(network, seed=seed)
    ds = simulate_dataset(net, conditions=conditions, times=times, noise=0.01, seed=seed)
    rng = np.random.default_rng(seed + 1)
    W = net.W + 0.1 * rng.normal(size=net.W.shape)  # away from the truth, so the gradient is not small
    alpha = net.alpha * (1 + 0.05 * rng.normal(size=net.n))
    def corrupted(W_, a_, kind):
        L, g = cb.loss_and_grad(W_, a_, ds.U, ds.t, ds.Y, mask=ds.observed(), loss=kind, rtol=rtol, atol=rtol,
                                adjoint=adjoint, adjoint_integrator=adjoint_integrator)
        return L, {k: v * (1 + corrupt) for k, v in g.items()}

    grad_fn = corrupted if corrupt else None
    res = run_gradcheck(W, alpha, ds.U, ds.t, ds.Y, mask=ds.observed(), loss=loss, directions=directions, seed=seed,
                        rtol=rtol, atol=rtol, grad_fn=grad_fn, adjoint=adjoint,
                        adjoint_integrator=adjoint_integrator)
    keys = ("rel_err_fd", "rel_err_fsens", "taylor_slope", "ok")
    if as_json:
        print_json({k: res[k] for k in keys} | {"network": net.name, "n": net.n, "loss": loss, "adjoint": adjoint,
                                                "adjoint_integrator": adjoint_integrator})
    else:
        th = res["thresholds"]
        click.echo(f"gradcheck on {net.name} (n={net.n}, {conditions} conditions, {times} times, loss {loss}, "
                   f"{adjoint} adjoint{'' if adjoint == 'discrete' else ', lam by ' + adjoint_integrator}, "
                   f"rtol=atol={rtol:g})")
        click.echo(f"{'check':<34} {'value':>12}  {'pass if':<14} result")
        rows = [("forward sensitivities, rel. error", res["rel_err_fsens"], f"<= {th['rel_err_fsens']:g}",
                 res["rel_err_fsens"] <= th["rel_err_fsens"]),
                ("central differences, rel. error", res["rel_err_fd"], f"<= {th['rel_err_fd']:g}",
                 res["rel_err_fd"] <= th["rel_err_fd"]),
                ("Taylor remainder slope", res["taylor_slope"], "2 +- 0.1", abs(res["taylor_slope"] - 2) <= 0.1)]
        for name, value, cond, ok in rows:
            click.echo(f"{name:<34} {value:>12.3e}  {cond:<14} {'ok' if ok else 'FAIL'}")
        click.echo(f"overall: {'ok' if res['ok'] else 'FAIL'}")
    if not res["ok"]:
        raise click.exceptions.Exit(EXIT_NUMERICAL)


@cli.command(name="import-cellbox-config")
@click.argument("config_json", metavar="FILE.json", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the YAML config here instead of stdout.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--conditions", type=click.IntRange(min=1), default=None, metavar="M",
              help="Number of conditions of the data (SK-MEL-133: 89): exact split counts, iterations -> epochs.")
@run_command
def import_cellbox_config(config_json, out, overwrite, conditions):
    """Map an original CellBox JSON config onto cellbox-nb config keys (YAML).

    Keys without a counterpart and misspelt keys the original silently ignored are reported on stderr.
    """
    from cellbox_nb.cellbox_import import import_cellbox_config as do_import
    from cellbox_nb.cellbox_import import load_cellbox_config, to_yaml

    if out is not None:
        check_output_path(out, overwrite, inputs=(config_json,))
    res = do_import(load_cellbox_config(config_json), conditions=conditions)
    for kind, text in res.messages:
        info(f"{kind}: {text}")
    text = to_yaml(res, config_json)
    if out is None:
        click.echo(text, nl=False)
    else:
        from cellbox_nb.data.h5atomic import write_bytes_atomically

        write_bytes_atomically(out, text)  # (a failed write leaves no empty or partial file)
        info(f"wrote {out}")


@cli.command()
@click.argument("fit", metavar="FIT.h5", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for the figures, report.md and index.html (created if missing).")
@click.option("--conditions", default=None, metavar="I,J,...",
              help="Condition indices to draw trajectories for (default: the first three test conditions).")
@json_option
@run_command
def report(fit, out, conditions, as_json):
    """Draw a fit's figures (W heatmap, trajectories, scatter, loss, edge ROC/PR) and write report.md, index.html.

    Needs matplotlib (pip install 'cellbox-nb[plot]').
    """
    from cellbox_nb.report import make_report, parse_conditions

    files = make_report(fit, out, conditions=parse_conditions(conditions))
    if as_json:
        print_json({"out": out, "files": files})
        return
    for path in files.values():
        info(f"wrote {path}")


@cli.command()
@click.argument("fit", metavar="FIT.h5", type=click.Path(dir_okay=False))
@click.option("--csv", "csv_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for W.csv, alpha.csv, d.csv, predictions.csv, metrics.json, history.csv.")
@click.option("--which", type=click.Choice(["best", "final"]), default="best", show_default=True,
              help="Parameters to export: best validation loss or last epoch.")
@json_option
@run_command
def export(fit, csv_dir, which, as_json):
    """Export a fit's parameters, predictions, metrics and history as CSV/JSON files."""
    from cellbox_nb.export import export_csv

    files = export_csv(fit, csv_dir, which=which)
    if as_json:
        print_json({"out": csv_dir, "which": which, "files": files})
        return
    for path in files:
        info(f"wrote {path}")


def _agree_under_mpi(error):
    """A usage error of ``train`` started by an MPI launcher: the ranks meet in the set-up's agreement, as in the
    command (cellbox_nb.fit.mpi.abort_on_error), so rank 0 alone reports it when every rank has it, and a rank
    with other arguments (a wrapper script) is not left waiting; every rank then exits (SystemExit).  Returns
    when not under MPI."""
    from cellbox_nb.fit.mpi import abort_on_error, from_environment, launched_ranks

    if launched_ranks() <= 1:
        return
    try:
        parallel = from_environment()  # (the same collective calls as the command makes before its set-up)
    except Exception:  # e.g. mpi4py missing: each rank reports for itself
        return
    if parallel is None:  # the launcher's variables say several ranks, MPI itself one (another MPI's launcher)
        return
    with abort_on_error(parallel):
        raise error


def main(argv=None):
    """Console-script entry point (``cellbox-nb``).

    Usage errors (unknown option, bad value, missing argument) are reported like every other error: one
    ``error: ...`` line on stderr and exit code 2, instead of click's multi-line usage block.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    import warnings

    def one_line_warning(message, category, filename, lineno, file=None, line=None):  # not Python's two lines
        click.echo(f"warning: {one_line(str(message))}", err=True)

    warnings.showwarning = one_line_warning
    try:
        code = cli.main(args=args, prog_name="cellbox-nb", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        if not args and exc.ctx is not None:  # plain `cellbox-nb`: the help, as --help gives it
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        if exc.ctx is not None and exc.ctx.parent:
            given = exc.ctx.info_name
        else:  # some option errors come without their command's context: name the command given
            given = next((a for a in args if a in cli.commands), None)
        where = f"cellbox-nb {given} --help" if given else "cellbox-nb --help"
        text = f"{one_line(exc.format_message())} (see '{where}')"
        if given == "train" and exc.exit_code == ConfigError.exit_code:
            _agree_under_mpi(ConfigError(text))
        click.echo(f"error: {text}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):  # Ctrl-C before a command installed its handlers
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        click.echo(f"error: {one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


_startup_done()  # the command line is loaded: SIGINT is Python's again (see cli/__init__.py)

if __name__ == "__main__":
    main()
