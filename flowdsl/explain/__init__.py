"""``flowdsl explain``: pictures of what the checker proves, drawn from the IR and the dependency engine."""
