"""Demand forecaster: robust damped Holt-Winters with a calibrated one-sided upper bound."""
