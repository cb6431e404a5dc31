"""python -m rewardflow_train.openrlhf --config CONFIG [key=value ...] [--openrlhf.flags ...]"""

import sys

from rewardflow_train.openrlhf.launcher import main

sys.exit(main())
