"""`python -m offpeak.demo`."""

import sys

from offpeak.demo.run import main

sys.exit(main())
