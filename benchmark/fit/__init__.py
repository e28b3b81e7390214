"""`svt fit`: both sides fit a function of one variable; the fit, its picture, its report, the tour."""
