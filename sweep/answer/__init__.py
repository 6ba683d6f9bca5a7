"""The answer: the recommendation rule, the literature's references, the answer as
data (``summary``), status, the report and its figures and anytime curve, export,
held-out evaluation, weights, and each trial's pictures.
"""
