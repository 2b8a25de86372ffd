"""`--work-dir`: where a long command keeps its finished pieces, so that a killed run resumes.

The folder is a `jinvert.work_dir.WorkDir` whose manifest is the command, the model's sha256
and every argument that shapes the result (all but where results go, how often they are kept,
and how the processes meet), so a rerun with other arguments or another model is refused.
"""

from jinvert.errors import JinvertError

# arguments that do not change what is computed
_NOT_RESULTS = {"out", "png", "work_dir", "save_every", "coordinator", "num_processes",
                "process_id", "distributed", "debug", "run", "data_dir"}


def work_dir(args, model_path, **recipe):
  """--work-dir's WorkDir for this command, or None without --work-dir; `recipe`: what else
  shapes the result (JSON values), such as the zoo's training recipe of the model trained."""
  from jinvert import distributed, work_dir
  from jinvert.version import __version__
  if args.work_dir is None:
    if getattr(args, "save_every", None) is not None:
      raise JinvertError("--save-every goes with --work-dir")
    return None
  manifest = {"command": args.command, "model_sha256": work_dir.file_sha256(model_path),
              **{k: v for k, v in sorted(vars(args).items()) if k not in _NOT_RESULTS},
              **recipe, "jinvert": __version__}
  return work_dir.WorkDir(args.work_dir, manifest, writes=distributed.is_writer(),
                          share=distributed.from_process_0)


def add(p, what: str):
  p.add_argument("--work-dir", metavar="DIR",
                 help=f"keep {what} here, each written atomically, so that a killed run, started "
                      "again with the same arguments, resumes and ends with the same result; a "
                      "folder of another run (other arguments, another model) is refused; the "
                      "outputs are still written only at the end")
