import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The package lives in python/; make `import hope_attn` work from a source checkout without installing.
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
