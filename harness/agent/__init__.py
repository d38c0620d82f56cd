"""What a model works with on a case: the tools to look at and measure the volumes (tools), and the loop that
runs a model through them under budgets, or asks it once with fixed images (loop). Tasks build toolboxes; the
engine runs the loop."""
