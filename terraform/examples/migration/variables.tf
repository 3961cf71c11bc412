# One variable per key of plans/<name>.tfvars.json (migrate/planning/tfvars.py), so that
#   terraform apply -var-file=../../../plans/<name>.tfvars.json
# works unchanged. Types must stay in step with terraform/modules/migration/variables.tf.

variable "project_id" {
  description = "GCP project that owns the migration targets."
  type        = string
}

variable "location" {
  description = "Location of the target buckets."
  type        = string
}

variable "labels" {
  description = "Labels on every created resource."
  type        = map(string)
}

variable "kms_key_name" {
  description = "Optional CMEK key for the buckets (null = Google-managed)."
  type        = string
  default     = null
}

variable "service_account_id" {
  description = "Account id of the migration service account."
  type        = string
}

variable "allow_object_delete" {
  description = "Grant object delete (conflict_policy = overwrite)."
  type        = bool
  default     = false
}

variable "buckets" {
  description = "Target buckets keyed by name."
  type = map(object({
    storage_class              = string
    versioning                 = bool
    soft_delete_retention_days = number
    lifecycle_rules = list(object({
      action        = string
      age_days      = number
      storage_class = optional(string)
    }))
  }))
}

variable "topics" {
  description = "Target topics keyed by id."
  type = map(object({
    message_retention_days    = number
    verification_subscription = string
    dead_letter_topic         = string
  }))
}

# Not in the tfvars file: pass with -var when needed.
variable "impersonators" {
  description = "Principals allowed to impersonate the migration service account, e.g. [\"group:migration-ops@example.com\"]."
  type        = list(string)
  default     = []
}
