"""The result files that `invert` and `generate` share: OUT.npz, the PNG grid, the JSON line."""

import io

import numpy as np

from jinvert.errors import JinvertError


def check_finite(images, outputs, what: str):
  """Raises a JinvertError naming the first target and restart whose image or output is NaN
  or inf: a result that is not a number is never reported as success."""
  bad = ~(np.all(np.isfinite(np.asarray(images)).reshape(images.shape[:2] + (-1,)), -1)
          & np.all(np.isfinite(np.asarray(outputs)), -1))
  if bad.any():
    t, r = (int(i) for i in np.argwhere(bad)[0])
    raise JinvertError(f"{what} produced NaN or inf in {int(bad.sum())} of {bad.size} results "
                       f"(first: target index {t}, restart {r}); nothing was written")


def npz_bytes(**arrays) -> bytes:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def image_results(outputs, out, png, images, targets, target_prob, loss_history, model_outputs,
                  objective: str, timing: dict, steps: int, figure: bytes | None = None,
                  extra_arrays: dict | None = None) -> dict:
  """Writes OUT.npz (and the PNG `figure`) through `outputs`; returns the JSON summary.

  Args:
    outputs: the command's `jinvert.files.Outputs`, where `out` and `png` are declared.
    out, png: the declared paths (png may be None).
    images: (T, R, ...) results; targets (T,) or (T, C); target_prob (T, R); loss_history
      (S, T, R); model_outputs (T, R, C).
    figure: the PNG's bytes, when `png` is given.
    extra_arrays: more arrays for OUT.npz.
  """
  images, targets = np.asarray(images, np.float32), np.asarray(targets)
  target_prob = np.asarray(target_prob, np.float32)
  files = {out: npz_bytes(images=images, targets=targets, target_prob=target_prob,
                          loss_history=np.asarray(loss_history, np.float32),
                          outputs=np.asarray(model_outputs, np.float32),
                          objective=np.array(objective), **(extra_arrays or {}))}
  known = not np.all(np.isnan(target_prob))
  class_means = np.nanmean(target_prob, axis=1) if known else None
  summary = {"targets": [t.tolist() for t in targets], "restarts": images.shape[1],
             "steps": steps, "objective": objective,
             "mean_target_prob": float(class_means.mean()) if known else None,
             "min_class_mean_target_prob": float(class_means.min()) if known else None,
             "seconds": round(timing["seconds"], 4),
             "compile_seconds": round(timing["compile_seconds"], 4), "out": str(out)}
  if png is not None:
    files[png] = figure
    summary["png"] = str(png)
  outputs.commit(files)
  return summary
