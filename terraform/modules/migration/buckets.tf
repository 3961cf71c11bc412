# Target buckets: one per key of var.buckets (the buckets the plan writes into).

locals {
  seconds_per_day = 86400
}

# The GCS service agent must be able to use the CMEK key before a bucket can name it as default.
data "google_storage_project_service_account" "gcs" {
  count   = var.kms_key_name != null && var.grant_kms_to_service_agents ? 1 : 0
  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "gcs_agent" {
  count         = var.kms_key_name != null && var.grant_kms_to_service_agents ? 1 : 0
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

resource "google_storage_bucket" "target" {
  for_each = var.buckets
  #checkov:skip=CKV_GCP_78:Versioning comes from the plan's tfvars ([targets] versioning, default true); checkov cannot resolve it.
  #checkov:skip=CKV_GCP_62:Access logging is opt-in via var.log_bucket (dynamic block below); Cloud Audit Logs cover data access.

  name          = each.key
  project       = var.project_id
  location      = var.location
  storage_class = each.value.storage_class
  labels        = var.labels

  # Never delete migrated data together with the infrastructure.
  force_destroy = false

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = each.value.versioning
  }

  soft_delete_policy {
    retention_duration_seconds = each.value.soft_delete_retention_days * local.seconds_per_day
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.lifecycle_rules
    content {
      action {
        type          = lifecycle_rule.value.action
        storage_class = lifecycle_rule.value.action == "SetStorageClass" ? lifecycle_rule.value.storage_class : null
      }
      condition {
        age = lifecycle_rule.value.age_days
      }
    }
  }

  # Parts of composite uploads (.migrate-parts/) are deleted by the run that composed them; a plan
  # that is abandoned mid-way leaves its parts behind, so GCS removes them after parts_max_age_days.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = var.parts_max_age_days
      matches_prefix = [".migrate-parts/"]
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.log_bucket == null ? [] : [var.log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = "${each.key}/"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.gcs_agent]
}
