"""The training-sanity checks: why does my network not learn?"""
