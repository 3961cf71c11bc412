output "bucket_urls" {
  description = "gs:// URLs of the target buckets."
  value       = module.migration.bucket_urls
}

output "topic_ids" {
  description = "Target topic ids."
  value       = module.migration.topic_ids
}

output "verification_subscription_ids" {
  description = "Verification subscriptions `migrate verify` drains."
  value       = module.migration.verification_subscription_ids
}

output "service_account_email" {
  description = "Run migrate as this account (impersonation)."
  value       = module.migration.service_account_email
}
