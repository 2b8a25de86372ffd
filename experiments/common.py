"""Helpers the experiment scripts share: checkpoints, timed preset runs, quality tables."""

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from jinvert import classifiers, engine, metrics, models, train
from jinvert.files import atomic_write_bytes


def parser(doc: str, out: str, restarts: int | None = None,
           data: bool = True) -> argparse.ArgumentParser:
  """The flags every study script shares; its docstring's first line and body become --help."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0], epilog=doc.split("\n\n", 2)[2],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  if restarts is not None:
    p.add_argument("--restarts", type=int, default=restarts, help=f"images per target ({restarts})")
  p.add_argument("--seed", type=int, default=0, help="jax.random seed (0)")
  p.add_argument("--out", default=out, help=f"where results are written ({out})")
  p.add_argument("--checkpoints", default="checkpoints",
                 help="folder the checkpoints are loaded from, or trained into when missing")
  if data:
    p.add_argument("--data-dir", help="data folder (else JINVERT_DATA, the cache, a download)")
  return p


def names(known, what: str):
  """An argparse `type`: a comma-separated list of names, each one of `known`; an unknown one is
  a usage error naming it and the choices, before any model is loaded or trained."""
  def parse(text):
    chosen = text.split(",")
    unknown = [name for name in chosen if name not in known]
    if unknown:
      raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, unknown))}; "
                                       f"choose from {', '.join(known)}")
    return chosen
  return parse


def log(line):
  print(line, file=sys.stderr, flush=True)


def classifier(name, dataset, checkpoints, seed=0, data_dir=None):
  """(apply_fn with activations, params) of a registered classifier, trained if not cached."""
  params, meta = train.load_or_train(Path(checkpoints) / f"{name}-{dataset}-s{seed}.msgpack", name,
                                     dataset, seed, data_dir, log)
  return models.apply_with_activations(models.get_model(name).module(meta["init"])), params, meta


def teacher(name, dataset, checkpoints, data_dir=None):
  """The `jinvert.classifiers.Classifier` of a registered classifier (its BatchNorm layers
  included), trained if not cached."""
  classifier(name, dataset, checkpoints, 0, data_dir)
  return classifiers.load_model(Path(checkpoints) / f"{name}-{dataset}-s0.msgpack", name)


def judge(dataset, checkpoints, data_dir=None):
  """((batched logits fn, params), metadata) of the independent CNN that judges images."""
  judge_fn, judge_params, meta = classifier("cnn", dataset, checkpoints, 0, data_dir)
  return (lambda p, x: judge_fn(p, x)[0], judge_params), meta


def vae_prior(dataset, checkpoints, data_dir=None):
  """(module, params) of the natural preset's VAE for `dataset`, trained if not cached."""
  params, _ = train.load_or_train(Path(checkpoints) / f"vae-{dataset}-s0.msgpack", "vae", dataset,
                                  0, data_dir, log)
  return models.get_model("vae").module(), params


def run_preset(apply_fn, params, preset, targets, restarts, seed, objective=None, **overrides):
  """Runs a preset (optionally with another objective, without the preset's other recipes and
  score, or another parameterisation) on all targets."""
  if objective is not None:
    preset = preset.searching_for(objective)
  kw = dict(optimizer=preset.optimizer, parameterization=preset.parameterization,
            transform=preset.transform, steps=preset.steps, draws=preset.draws,
            pooled=preset.pooled, score=preset.score)
  kw.update(overrides)
  return engine.timed_invert(apply_fn, params, preset.objective, jnp.asarray(targets),
                             key=jax.random.key(seed), input_shape=(28, 28), restarts=restarts, **kw)


def quality(result, timing, targets, judge, train_images):
  """metrics.summarize plus the timings."""
  summary = metrics.summarize(result.inputs, result.outputs, targets, judge, train_images)
  summary.update({k: round(v, 4) for k, v in timing.items()})
  summary["image_seconds"] = timing["seconds"] / result.inputs.shape[0] / result.inputs.shape[1]
  return summary


COLUMNS = (("target_prob", "mean", "p(target)"), ("target_prob", "min", "min class p"),
           ("agreement", "mean", "agreement"), ("agreement", "min", "min class agr."),
           ("diversity", "mean", "diversity"), ("nearest_train_distance", "mean", "nearest train"),
           ("total_variation", "mean", "TV"))


def table(rows: dict) -> str:
  """A markdown table, a row per method, of the quality metrics."""
  head = "| method | " + " | ".join(c[2] for c in COLUMNS) + " | seconds | compile s |"
  lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
  for name, s in rows.items():
    cells = [f"{s[m][k]:.4f}" if m in s else "-" for m, k, _ in COLUMNS]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['seconds']:.3f} | {s['compile_seconds']:.2f} |")
  return "\n".join(lines)


def write_json(path, obj):
  atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())
