"""Turn the inventory into a reviewable plan: diff, batches, reports, Terraform variables."""
