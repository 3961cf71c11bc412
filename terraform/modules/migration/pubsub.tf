# Target topics: one per key of var.topics (the topics the plan publishes to), each with a
# dead-letter topic and the verification subscription that `migrate verify` drains.

locals {
  # Subscriptions keep unacked messages for at most 31 days (default 7):
  # https://cloud.google.com/pubsub/docs/subscription-properties#message_retention_duration
  # The verification subscription keeps them as long as its topic does, so a long migration can be
  # verified weeks after the run; the dead-letter hold keeps the default week.
  max_subscription_retention_days = 31
  dead_letter_retention_days      = 7
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "target" {
  for_each = var.topics
  #checkov:skip=CKV_GCP_83:CMEK is opt-in via var.pubsub_kms_key_name; Google-managed encryption is the default.

  name                       = each.key
  project                    = var.project_id
  labels                     = var.labels
  kms_key_name               = var.pubsub_kms_key_name
  message_retention_duration = "${each.value.message_retention_days * local.seconds_per_day}s"
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = var.topics
  #checkov:skip=CKV_GCP_83:CMEK is opt-in via var.pubsub_kms_key_name; Google-managed encryption is the default.

  name                       = each.value.dead_letter_topic
  project                    = var.project_id
  labels                     = var.labels
  kms_key_name               = var.pubsub_kms_key_name
  message_retention_duration = "${each.value.message_retention_days * local.seconds_per_day}s"
}

resource "google_pubsub_subscription" "verification" {
  for_each = var.topics

  name    = each.value.verification_subscription
  project = var.project_id
  topic   = google_pubsub_topic.target[each.key].id
  labels  = var.labels

  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${min(each.value.message_retention_days, local.max_subscription_retention_days) * local.seconds_per_day}s"
  retain_acked_messages      = false

  # Never expire: the subscription must outlive quiet periods between migration waves.
  expiration_policy {
    ttl = ""
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
}

# Messages published to a topic without subscriptions are dropped; this one keeps dead letters
# until someone looks at them.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = var.topics

  name    = "${each.value.dead_letter_topic}-hold"
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].id
  labels  = var.labels

  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${local.dead_letter_retention_days * local.seconds_per_day}s"

  expiration_policy {
    ttl = ""
  }
}

# Dead lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic and
# acknowledge (subscribe) on the source subscription. Both bindings are resource-level.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = var.topics

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  for_each = var.topics

  project      = var.project_id
  subscription = google_pubsub_subscription.verification[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
