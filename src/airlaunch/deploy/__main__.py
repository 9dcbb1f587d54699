import sys

from airlaunch.deploy.cli import main

sys.exit(main())
