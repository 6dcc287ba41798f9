"""Where the advantage is computed: the MARS estimator, its diagnostics and the anchor-aware group filter."""

from mars.advantage.core import compute_mars_advantage
from mars.advantage.diagnostics import fusion_diagnostics
from mars.advantage.group_filter import GroupFilterResult, filter_groups

__all__ = ["compute_mars_advantage", "fusion_diagnostics", "filter_groups", "GroupFilterResult"]
