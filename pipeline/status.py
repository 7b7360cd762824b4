"""Stage: say, for each stage of an experiment, whether its outputs are up to date, stale (and what
changed) or missing, without running anything.

    python -m pipeline.status --config pipeline/configs/default.yaml [key=value ...]
    python -m pipeline.status --config ... --name        # only the experiment's name (run.sh uses it)
    python -m pipeline.status --config ... --member      # an ensemble member's stages, through predict
    python -m pipeline.status --gpus                     # how many GPUs torch can run on (one line if not)

For an ensemble config (lib/ensembles.py): each member as above, then the ensemble's own stages.
"""
from __future__ import annotations

from .lib import cli
from .lib.config import check_encoder, load_config
from .lib.ensembles import is_ensemble, load_ensemble
from .lib.errors import PipelineError


def report(config, layout, work, member: bool = False) -> None:
    """Each stage's state; an ensemble's `member` through predict (the ensemble tunes and submits)."""
    # the data and records load torch: imported once the config is known good, so that a config error (and
    # `--name`) answers at once
    from .lib.data import load_test, load_train
    from .lib.fold_data import FoldInputs
    from .lib.mosaic import MatchSettings
    from .lib.postprocess import stored_decision
    from .lib.records import experiment_states, mosaic_stage, say
    from .lib.submission import sample_ids

    exp = work.experiment(config.name)
    train, test = load_train(layout, work), load_test(layout, work)
    say("mosaic", mosaic_stage(work, train.digest, test.digest, MatchSettings().to_dict()).state())
    try:
        inputs = FoldInputs.load(layout, work)
    except PipelineError as err:
        say("folds", ("missing", [str(err)]))
        return
    say("folds", ("up to date", []))
    states = experiment_states(config, inputs, test.digest, stored_decision(exp), sample_ids(layout))
    for stage, status in states.items():
        if not (member and stage in ("tune", "submit")):
            say(stage, status)


def ensemble_status(args, p) -> None:
    """Each member's stages, then the ensemble's (averaged predictions, tune, submit), by the same records."""
    from .lib.postprocess import stored_decision
    from .lib.records import ensemble_states, say
    from .lib.submission import sample_ids
    if args.overrides:
        p.error("an ensemble takes no overrides: they go into its members")
    ensemble = load_ensemble(args.config)
    if args.name:
        print(ensemble.name)
        return
    configs = [load_config(m.config, list(m.overrides), encoder=False) for m in ensemble.members]
    names = [config.name for config in configs]
    print(f"ensemble {ensemble.name} ({args.config}): {ensemble.combine} of {', '.join(names)}")
    first = configs[0]  # the members share one split (load_ensemble checks), and the ensemble tunes by the first's
    layout, work = cli.layouts(args, lock=False, n_folds=first.data.n_folds, split=first.data.split)
    for member, config in zip(ensemble.members, configs):
        print(f"member {config.name} ({member.config}" + (f" with {' '.join(member.overrides)}" if member.overrides
                                                            else "") + ")")
        report(config, layout, work, member=True)
    exp = work.experiment(ensemble.name)
    states = ensemble_states(exp, [work.experiment(n) for n in names], first.tune, stored_decision(exp),
                             sample_ids(layout), work.submission_csv(ensemble.name), work.mosaic_json, ensemble.combine)
    print(f"ensemble {ensemble.name}")
    for stage, status in states.items():
        say(stage, status)


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="the experiment's YAML (needed unless --gpus)")
    p.add_argument("--gpus", action="store_true",
                   help="print how many GPUs this torch can run on; a GPU it has no kernels for is one line")
    p.add_argument("--name", action="store_true", help="print only the experiment's name")
    p.add_argument("--check-encoder", action="store_true",
                   help="check the encoder's name against the installed smp and timm too (run.sh does, first)")
    p.add_argument("--member", action="store_true",
                   help="an ensemble's member: its stages through predict (the ensemble tunes and submits)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    if args.gpus:
        from .lib.gpu import check_gpus  # loads torch, which the other answers do not need
        print(check_gpus())
        return
    if not args.config:
        p.error("--config is required")
    if is_ensemble(args.config):
        ensemble_status(args, p)
        return
    config = load_config(args.config, args.overrides, encoder=False)
    if args.check_encoder:
        check_encoder(config)
    if args.name:
        print(config.name)
        return
    print(f"experiment {config.name}" + (f" ({args.config} with {' '.join(args.overrides)})" if args.overrides else ""))
    layout, work = cli.layouts(args, lock=False, n_folds=config.data.n_folds,
                                split=config.data.split)  # reads only: works beside a running job
    report(config, layout, work, member=args.member)


if __name__ == "__main__":
    cli.run_stage(main)
