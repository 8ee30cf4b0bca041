import sys

from yoloworld.cli import main

sys.exit(main())
