"""The HTTP API: EXXA batch routes over the offpeak core."""
