"""Hardware-aware architecture search (layer 3).

Empty for now: search spaces (`nas/spaces/`), candidates, objectives and ask/tell
strategies that use the predictors as their cost function land with the search issue.
"""
