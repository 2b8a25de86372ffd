"""The benchmark's tables, printed as Markdown on stdout (the JSON line comes last)."""


def _ms(seconds) -> str:
  return "-" if seconds is None else f"{1e3 * seconds:.3f}"


def header(model: str, steps: int, device_kind: str, backend: str, jax_version: str,
           precision: str, flops: int, peak: float, peak_n: int, devices: int, device: str):
  print(f"jinvert bench: {model} inversion, T=10 x R x S={steps}, {device_kind} ({backend}), "
        f"jax {jax_version}, precision {precision}")
  print(f"work per image-step: {flops:,} FLOP (2 x MACs of the step's products, forward and "
        "backward to the input; a convolution is one product of its patches); "
        f"matmul peak {peak:,.0f} GFLOP/s ({peak_n}^3 float32, precision {precision})")
  if devices > 1:
    print(f"{devices} {device} devices: each size's lanes split over them where their count "
          "divides the 10 targets or R (`engine.lane_sharding`), as `invert` runs them")


def size_table_head():
  print("| R | compile s | median s (min-max) | image-steps/s | GFLOP/s | % of matmul peak | "
        "products bound: XLA one device / XLA split / torch ms per step | % of the bound "
        "(the fastest of the three) | peak bytes |")
  print("|---|---|---|---|---|---|---|---|---|")


def size_row(row: dict):
  bound = row["products_seconds"]
  print(f"| {row['restarts']} | {row['compile_seconds']:.2f} | {row['seconds_median']:.4f} "
        f"({row['seconds_min']:.4f}-{row['seconds_max']:.4f}) | "
        f"{row['image_steps_per_s']:,.0f} | {row['gflops']:,.1f} | "
        f"{100 * row['peak_fraction']:.1f}% | "
        f"{_ms(bound['xla'])} / {_ms(bound['xla_split'])} / {_ms(bound['torch'])} | "
        f"{100 * row['bound_fraction']:.1f}% | {row['peak_bytes'] or '-'} |")


def differences_line(restarts: int, differences: dict):
  print(f"\nreferences against jinvert's step rule, 5 steps from the same start at "
        f"R={restarts}: max |image difference| " +
        ", ".join(f"{k} {v:.2g}" for k, v in differences.items()))


def reference_table_head(repeats: int):
  print(f"\nreferences (image-steps/s, median of {repeats} interleaved rounds, each timed "
        "pass after an untimed one of its own; jinvert / reference is the median of the "
        "rounds' ratios; % of the bound: of the fastest products-alone time at that size):")
  print("| R | jinvert | seed_loop | class_loop | torch_eager | torch_compile (whole step, "
        "fullgraph) | jinvert / best torch | jinvert % of bound | best torch % of bound |")
  print("|---|---|---|---|---|---|---|---|---|")


def reference_row(restarts: int, measured: dict):
  """One size's row; `measured` as `run_benchmark` keeps it in `by_size`."""
  rates, ratios, best = measured["rates"], measured["ratios"], measured["best_torch"]
  cell = lambda n: f"{rates[n]:,.0f} ({ratios[n]:.2f}x)" if n in rates else "-"
  print(f"| {restarts} | {rates['jinvert']:,.0f} | {cell('seed_loop')} | {cell('class_loop')} | "
        f"{cell('torch_eager')} | {cell('torch_compile')} | "
        + (f"{ratios[best]:.2f}x ({best}) | " if best else "- | ")
        + f"{100 * measured['jinvert_bound_fraction']:.1f}% | "
        + (f"{100 * measured['best_torch_bound_fraction']:.1f}% |" if best else "- |"))


def drift_line(precision: str, drift: dict):
  print(f"\n{precision} vs float32 (highest): max |image difference| "
        f"{drift['max_abs_image']:.3g}, max |target probability difference| "
        f"{drift['max_abs_target_prob']:.3g}")


def largest_line(steps: int, up_to: int, largest: dict):
  print(f"\nlargest R that ran for S={steps} (at most {up_to}): "
        f"{largest['restarts']:,} ({10 * largest['restarts']:,} images), "
        f"{largest['seconds']:.2f} s, {largest['image_steps_per_s']:,.0f} image-steps/s, "
        f"compiled bytes {largest['compiled_bytes']}, peak bytes {largest['peak_bytes']}")
