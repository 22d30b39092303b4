"""Prefect tasks: small named verbs over the offpeak core, with their retry policies."""
