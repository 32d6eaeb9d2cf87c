"""``python -m codec_bridge``: see `codec_bridge.cli`."""

from codec_bridge.cli import main

raise SystemExit(main())
