"""`python -m toolkit info`: versions, the backend in use and why the GPU is or is not usable."""

import argparse

from . import info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit")
    parser.add_argument("command", choices=["info"], help="info: versions, backend, GPU and NVRTC availability")
    parser.parse_args(argv)
    info.render()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
