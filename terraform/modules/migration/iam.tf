# The identity `migrate run` / `verify` / `preflight` use, with resource-level grants only:
# no project-level role is granted anywhere in this module.

resource "google_service_account" "migrate" {
  project      = var.project_id
  account_id   = var.service_account_id
  display_name = "migrate: catalog and listener-log migration"
  description  = "Uploads catalog objects and replays listener events; managed by terraform/modules/migration."
}

locals {
  sa_member = "serviceAccount:${google_service_account.migrate.email}"

  # Bucket-level roles (bucket x role). Why each one:
  # - objectCreator: `run` uploads objects (storage.objects.create). It cannot overwrite or delete.
  # - objectViewer: `plan` diffs against the destination (objects.list), `run` stats an object after a
  #   412 precondition failure to compare CRC32C (objects.get), `verify` lists and stats (list/get).
  # - legacyBucketReader: the narrowest predefined role with storage.buckets.get, which `preflight`
  #   needs to tell "bucket missing" from "not allowed" (it adds only objects.list besides).
  # - objectUser (only with allow_object_delete): overwriting an existing object needs
  #   storage.objects.delete, i.e. conflict_policy = overwrite.
  bucket_roles = concat(
    ["roles/storage.objectCreator", "roles/storage.objectViewer", "roles/storage.legacyBucketReader"],
    var.allow_object_delete ? ["roles/storage.objectUser"] : [],
  )
  bucket_grants = {
    for pair in setproduct(keys(var.buckets), local.bucket_roles) : "${pair[0]} ${pair[1]}" => {
      bucket = pair[0]
      role   = pair[1]
    }
  }

  # Topic-level roles. publisher: `run` publishes events. viewer: `preflight` gets the topic to
  # check it exists (publisher carries no topics.get).
  topic_roles = ["roles/pubsub.publisher", "roles/pubsub.viewer"]
  topic_grants = {
    for pair in setproduct(keys(var.topics), local.topic_roles) : "${pair[0]} ${pair[1]}" => {
      topic = pair[0]
      role  = pair[1]
    }
  }

  # Subscription-level roles. subscriber: `verify` pulls and acks the verification subscription.
  # viewer: `preflight` gets the subscription to check it exists (subscriber carries no subscriptions.get).
  subscription_roles = ["roles/pubsub.subscriber", "roles/pubsub.viewer"]
  subscription_grants = {
    for pair in setproduct(keys(var.topics), local.subscription_roles) : "${pair[0]} ${pair[1]}" => {
      topic = pair[0]
      role  = pair[1]
    }
  }
}

resource "google_storage_bucket_iam_member" "migrate" {
  for_each = local.bucket_grants

  bucket = google_storage_bucket.target[each.value.bucket].name
  role   = each.value.role
  member = local.sa_member
}

# Parallel composite uploads (files over transfer.large_file_threshold) write parts under
# `.migrate-parts/` and delete them once composed: delete is granted on that prefix only.
resource "google_storage_bucket_iam_member" "migrate_parts" {
  for_each = var.buckets

  bucket = google_storage_bucket.target[each.key].name
  role   = "roles/storage.objectUser"
  member = local.sa_member

  condition {
    title       = "migrate-composite-parts"
    description = "Only the scratch parts of composite uploads"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${each.key}/objects/.migrate-parts/\")"
  }
}

resource "google_pubsub_topic_iam_member" "migrate" {
  for_each = local.topic_grants

  project = var.project_id
  topic   = google_pubsub_topic.target[each.value.topic].name
  role    = each.value.role
  member  = local.sa_member
}

resource "google_pubsub_subscription_iam_member" "migrate" {
  for_each = local.subscription_grants

  project      = var.project_id
  subscription = google_pubsub_subscription.verification[each.value.topic].name
  role         = each.value.role
  member       = local.sa_member
}

# Operators run `migrate` by impersonating the service account (no keys are ever created).
# This is a binding on the service account itself, not on the project.
resource "google_service_account_iam_member" "impersonators" {
  for_each = toset(var.impersonators)

  service_account_id = google_service_account.migrate.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}
