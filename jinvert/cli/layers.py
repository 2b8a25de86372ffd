"""`jinvert layers`: the activations of a model that objectives can name."""


def add(commands):
  p = commands.add_parser(
      "layers", help="list the layers of a model that objectives can name",
      description="Every activation of MODEL (a jinvert checkpoint or an .onnx file) that "
                  "--objective unit, channel or neuron can name with --layer: its shape for one "
                  "input, and its channels (a feature map's; a dense layer's units). A table, "
                  "then the last stdout line as JSON: {\"layers\": [{\"name\", \"shape\", "
                  "\"channels\", \"kind\"}], \"channel_axis\"}.")
  p.add_argument("checkpoint", metavar="MODEL",
                 help="a classifier checkpoint (jinvert train) or an .onnx file")
  p.set_defaults(run=run)


def run(args):
  from jinvert import classifiers
  clf = classifiers.load_model(args.checkpoint, "MODEL")
  layers = clf.layer_shapes()
  width = max([len(layer["name"]) for layer in layers] + [5])
  print(f"{clf.name}: inputs {tuple(clf.input_shape)}, {clf.n_classes} outputs; feature maps "
        f"keep their channels on axis {clf.channel_axis}")
  for layer in layers:
    print(f"  {layer['name']:<{width}}  {str(tuple(layer['shape'])):<16} {layer['kind']:<12} "
          f"{layer['channels']} {'channels' if layer['kind'] == 'feature map' else 'units'}")
  return {"model": clf.name, "layers": layers, "channel_axis": clf.channel_axis}
