#!/usr/bin/env python3
"""PyTorch side of ``deno task bench``: the same models, batch sizes and measurements.

    python3 bench/torch_bench.py [--model resnet20,regnet400mf] [--batch 64,512] [--steps 50]
                                 [--warmup 10] [--input-size N] [--device auto|cuda|cpu]
                                 [--threads N] [--no-tf32]

For every model and batch size: training images/s (SGD lr 0.01, momentum 0.9, weight decay 1e-4,
cross-entropy, ``loss.item()`` each step as a training loop does, after warm-up steps, timed
between CUDA synchronizations) and inference images/s (eval mode, no grad, the logits copied to
the host each batch, as the Deno bench reads them). One JSON line per measurement on stdout, with
the keys of ``bench.ts --json``: ``model, backend, adapter, batch, train_img_per_s,
infer_img_per_s, dispatches_per_step, gpu_bytes`` (``backend`` "torch-cuda" or "torch-cpu",
``dispatches_per_step`` null, ``gpu_bytes`` the peak of ``torch.cuda.max_memory_allocated`` or
null). A header line on stderr names the device.

The reference code's ResNets and their ConvRNN/ConvGRU variants are the classes of
``tests/fixtures/make_fixtures.py`` (imported from there, not copied); RegNetY is torchvision's.
Random data, as in the Deno bench. PyTorch's defaults are kept (eager, fp32 parameters, cuDNN
may use TF32 for convolutions on Ampere and later; ``--no-tf32`` turns that off).
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "make_fixtures.py")


def load_fixture_models():
    """The reference code's model classes, from the parity fixtures' generator (imported as a module)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MF = load_fixture_models()

# name -> (builder(num_classes), default input size); names as in models/registry.ts.
MODELS = {
    "resnet20": (lambda c: MF.ResNet(MF.BasicBlock, [3, 3, 3], c), 32),
    "resnet20-convrnn": (lambda c: MF.ResNetRNN(MF.ConvRNN, num_classes=c), 32),
    "resnet20-convgru": (lambda c: MF.ResNetRNN(MF.ConvGRU, num_classes=c), 32),
    "resnet32": (lambda c: MF.ResNet(MF.BasicBlock, [5, 5, 5], c), 32),
    "resnet56": (lambda c: MF.ResNet(MF.BasicBlock, [9, 9, 9], c), 32),
    "regnet400mf": (lambda c: torchvision.models.regnet_y_400mf(num_classes=c), 224),
    "regnet800mf": (lambda c: torchvision.models.regnet_y_800mf(num_classes=c), 224),
}
NUM_CLASSES = 10
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 1e-4  # as bench.ts


def int_list(text):
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def model_list(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in MODELS:
            raise argparse.ArgumentTypeError(
                f"unknown model {n!r}; valid models: {', '.join(MODELS)}")
    return names


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=model_list, default=["resnet20"],
                   help="models, comma-separated (default resnet20)")
    p.add_argument("--batch", type=int_list, default=[64],
                   help="batch sizes, comma-separated (default 64)")
    p.add_argument("--steps", type=int, default=None,
                   help="measured steps (default 50 on cuda, 10 on cpu)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up steps (default 10 on cuda, 2 on cpu)")
    p.add_argument("--input-size", type=int, default=None, help="input size (default: the model's)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--no-tf32", action="store_true", help="no TF32 in cuDNN or matmuls")
    return p.parse_args(argv)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name, batch, size, device, steps, warmup):
    torch.manual_seed(0)
    model = MODELS[name][0](NUM_CLASSES).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # a host read each step, as a training loop does

    model.train()
    for _ in range(warmup):
        train_step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync(device)
    train_s = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model(x).cpu()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x).cpu()  # the logits to the host, as the Deno bench reads them
        sync(device)
        infer_s = time.perf_counter() - t0

    gpu_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    result = {
        "model": name,
        "backend": f"torch-{device.type}",
        "adapter": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "batch": batch,
        "train_img_per_s": batch * steps / train_s,
        "infer_img_per_s": batch * steps / infer_s,
        "dispatches_per_step": None,
        "gpu_bytes": gpu_bytes,
    }
    del model, opt, x, y
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"cpu: {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return "cpu"


def main(argv):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_bench: --device cuda, but torch sees no CUDA device")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    steps = args.steps or (50 if use_cuda else 10)
    warmup = args.warmup if args.warmup is not None else (10 if use_cuda else 2)
    if use_cuda:
        where = f"cuda ({torch.cuda.get_device_name(device)}), cudnn tf32 " + \
            ("on" if torch.backends.cudnn.allow_tf32 else "off")
    else:
        where = f"cpu ({cpu_name()}), {torch.get_num_threads()} threads"
    print(f"torch_bench: torch {torch.__version__} on {where}", file=sys.stderr, flush=True)
    for name in args.model:
        size = args.input_size or MODELS[name][1]
        for batch in args.batch:
            print(json.dumps(measure(name, batch, size, device, steps, warmup)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
