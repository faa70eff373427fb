"""Score trained weights on a net's TEST phase, as `caffe test`: runs --iterations batches from the net's
data layers, prints every output of every batch, then the means (and the mean total loss). Weights that
leave a learnable blob at its filler (missing from the file, or of another shape) are an error with the
fine-tune table, unless --allow-partial."""
from .common import add_state_arguments


def positive(text) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="NET", help="net file (.yaml)")
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help="a snapshot (.pt), a state_dict file or Caffe's weights (.caffemodel)")
    parser.add_argument("--iterations", type=positive, default=50, help="batches to score (default 50, as Caffe)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--oversample", action="store_true",
                        help="ten-crop testing: score the 4 corner and the centre crops of every image and their "
                             "mirrors, and average their softmax probabilities (the data layers must crop)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="score even when blobs of the net are missing from the file or of another shape "
                             "(they keep their fillers); without it that is an error (exit 2)")
    add_state_arguments(parser, default_phase="TEST")


def run(args) -> int:
    # Imported here: building the CLI's parser (`netdef --help`) must not load torch.
    import torch

    from ..api import read_net
    from ..errors import NetdefError, Problem
    from ..build import weighted_loss
    from ..tools.oversample import build_ten_crop_net
    from ..train.device import memory_format, resolve_device
    from ..train.evaluate import evaluate
    from ..train.log import output_text, output_values
    from ..train.nets import build_phase_net
    from ..train.snapshot import copy_weights, load_weights, weights_table

    device = resolve_device(args.device)
    source, stages = read_net(args.model), tuple(args.stage)
    graph = source.info(args.phase, args.level, stages).graph  # bad nets fail before any weight is read
    weights = load_weights(args.weights)
    torch.manual_seed(0)  # layers missing from the file get the same fillers on every run
    layout = memory_format(device, "fp32")
    if args.oversample:
        net, feed, layer_names = build_ten_crop_net(source, args.phase, device, args.level, stages, layout)
    else:
        phase_net = build_phase_net(source, args.model, args.phase, 0, device, args.level, stages, layout=layout)
        net, feed, layer_names = phase_net.net, phase_net.feed, phase_net.layer_names
    net = net.eval()
    rows = copy_weights(net, weights, layer_names, graph)
    kept = sorted({row[0] for row in rows if row[2] in ("missing in file", "shape mismatch")})
    if kept and not args.allow_partial:
        what = "none of its blobs fit the net" if not any(row[2] == "copied" for row in rows) else \
            f"{len(kept)} layer(s) would be scored with their fillers: {', '.join(kept)}"
        raise NetdefError(Problem(f"the weights in {args.weights} do not fit {args.model}: {what} (check --model "
                                  "and --weights, or pass --allow-partial to score anyway):\n" + weights_table(rows)))
    if any(row[2] != "copied" for row in rows):
        print(f"Not every blob of the net was in {args.weights}:")
        print("\n".join("    " + line for line in weights_table(rows).splitlines()))
    print(f"Running for {args.iterations} iterations.")
    losses = []

    def show(batch, outputs):  # caffe test prints every batch's outputs
        for blob, value, _ in output_values(outputs, net.loss_weights):
            print(f"Batch {batch}, {blob} = {value:.6g}")
        if net.loss_weights:
            losses.append(weighted_loss(outputs, net.loss_weights).item())

    means = evaluate(net, feed, args.iterations, on_batch=show)
    if net.loss_weights:
        print(f"Loss: {sum(losses) / args.iterations:.6g}")
    for blob, value, weight in output_values(means, net.loss_weights):
        print(output_text(blob, value, weight))
    return 0
