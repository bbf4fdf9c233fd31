"""ADAGE: automatic deployment of distributed applications."""

import gc


def command() -> int:
    """The ``adage`` command (``python -m adage``): ``cli.main``, its modules imported with the
    collector off (their dataclasses and schemas made it run ~30 ms of collections, a fifth
    of the start) and their objects then frozen (``gc.freeze``: they live until exit, so no
    collection walks them, the exit's full one included)."""
    gc.disable()
    try:
        from adage.cli import main
    finally:
        gc.freeze()
        gc.enable()
    return main()
