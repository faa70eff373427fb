"""Score trained weights on a net's TEST phase, as `caffe test`: runs --iterations batches from the net's
data layers, prints every output of every batch, then the means (and the mean total loss)."""
from .common import add_state_arguments


def positive(text) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def add_arguments(parser):
    parser.add_argument("--model", required=True, metavar="NET", help="net file (.yaml)")
    parser.add_argument("--weights", required=True, metavar="FILE", help="a snapshot (.pt) or a state_dict file")
    parser.add_argument("--iterations", type=positive, default=50, help="batches to score (default 50, as Caffe)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--oversample", action="store_true",
                        help="ten-crop testing: score the 4 corner and the centre crops of every image and their "
                             "mirrors, and average their softmax probabilities (the data layers must crop)")
    add_state_arguments(parser, default_phase="TEST")


def run(args) -> int:
    # Imported here: building the CLI's parser (`netdef --help`) must not load torch.
    import torch

    from .. import summarize
    from ..build import weighted_loss
    from ..tools.oversample import build_ten_crop_net
    from ..train.snapshot import copy_weights, load_weights, weights_table
    from ..train.solver import build_phase_net, memory_format, output_text, output_values, resolve_device

    device = resolve_device(args.device)
    summarize(args.model, args.phase, args.level, tuple(args.stage))  # bad nets fail before any weight is read
    weights = load_weights(args.weights)
    torch.manual_seed(0)  # layers missing from the file get the same fillers on every run
    layout = memory_format(device, "fp32")
    if args.oversample:
        net, feed, layer_names = build_ten_crop_net(args.model, args.phase, device, args.level, tuple(args.stage),
                                                    layout)
    else:
        phase_net = build_phase_net("test", args.model, args.phase, 0, device, args.level, tuple(args.stage),
                                    layout=layout)
        net, feed, layer_names = phase_net.net, phase_net.feed, phase_net.layer_names
    net = net.eval()
    rows = copy_weights(net, weights, layer_names)
    if any(row[2] != "copied" for row in rows):
        print(f"Not every blob of the net was in {args.weights}:")
        print("\n".join("    " + line for line in weights_table(rows).splitlines()))
    print(f"Running for {args.iterations} iterations.")
    sums, total_loss = {}, 0.0
    with torch.no_grad():
        for batch in range(args.iterations):
            outputs = net(**feed.next())
            for blob, value, _ in output_values(outputs, net.loss_weights):
                print(f"Batch {batch}, {blob} = {value:.6g}")
            for blob, value in outputs.items():
                sums[blob] = value.float() + sums.get(blob, 0)
            if net.loss_weights:
                total_loss += weighted_loss(outputs, net.loss_weights).item()
    means = {blob: total / args.iterations for blob, total in sums.items()}
    if net.loss_weights:
        print(f"Loss: {total_loss / args.iterations:.6g}")
    for blob, value, weight in output_values(means, net.loss_weights):
        print(output_text(blob, value, weight))
    return 0
