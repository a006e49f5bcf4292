"""python -m hope_attn: the demo (hope_attn.demo; also installed as the hope-attn-demo command)."""

import sys

from .demo import main

sys.exit(main())
