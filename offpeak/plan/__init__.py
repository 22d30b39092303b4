"""Plan: what pending work there is, the carbon forecasts, and what to launch now and where."""
