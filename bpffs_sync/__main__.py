import sys

from bpffs_sync.cli import main

sys.exit(main())
