"""Identity leakage: does a redacted person stay unidentified? Identity data sets, attackers (adversaries) of
increasing strength, and the identity metrics (verification accuracy, ROC AUC, TAR@FAR, rank-1/rank-5), built on
the recognizers of :mod:`anonlab.recognizers`."""
