output "bucket_names" {
  description = "Target bucket names, keyed like var.buckets."
  value       = { for k, b in google_storage_bucket.target : k => b.name }
}

output "bucket_urls" {
  description = "gs:// URLs of the target buckets."
  value       = { for k, b in google_storage_bucket.target : k => b.url }
}

output "topic_ids" {
  description = "Full ids (projects/.../topics/...) of the target topics."
  value       = { for k, t in google_pubsub_topic.target : k => t.id }
}

output "dead_letter_topic_ids" {
  description = "Full ids of the dead-letter topics, keyed by target topic."
  value       = { for k, t in google_pubsub_topic.dead_letter : k => t.id }
}

output "verification_subscription_ids" {
  description = "Full ids of the verification subscriptions `migrate verify` drains, keyed by target topic."
  value       = { for k, s in google_pubsub_subscription.verification : k => s.id }
}

output "service_account_email" {
  description = "Email of the migration service account."
  value       = google_service_account.migrate.email
}
