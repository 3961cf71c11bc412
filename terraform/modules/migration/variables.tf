# The first block of variables mirrors plans/<name>.tfvars.json (written by `migrate plan`,
# migrate/planning/tfvars.py). The rest are module-only knobs with safe defaults.

variable "project_id" {
  description = "GCP project that owns the target buckets, topics and the migration service account."
  type        = string
}

variable "location" {
  description = "Location of the target buckets (multi-region such as US, or a region)."
  type        = string
}

variable "labels" {
  description = "Labels on every bucket, topic and subscription (includes managed-by = migrate)."
  type        = map(string)
  default     = {}
}

variable "kms_key_name" {
  description = "Optional CMEK key (projects/.../cryptoKeys/...) used as the default key of every target bucket."
  type        = string
  default     = null
}

variable "service_account_id" {
  description = "Account id (the part before @) of the service account `migrate run` uses."
  type        = string
}

variable "allow_object_delete" {
  description = "Grant object delete on the target buckets: needed only when conflict_policy = overwrite."
  type        = bool
  default     = false
}

variable "buckets" {
  description = "Target buckets keyed by bucket name."
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
  default = {}

  validation {
    condition = alltrue([
      for b in values(var.buckets) : contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], b.storage_class)
    ])
    error_message = "buckets[*].storage_class must be one of STANDARD, NEARLINE, COLDLINE, ARCHIVE."
  }

  validation {
    condition = alltrue([
      for b in values(var.buckets) : b.soft_delete_retention_days == 0 || (b.soft_delete_retention_days >= 7 && b.soft_delete_retention_days <= 90)
    ])
    error_message = "buckets[*].soft_delete_retention_days must be 0 (disabled) or 7..90 days."
  }

  validation {
    condition = alltrue(flatten([
      for b in values(var.buckets) : [
        for r in b.lifecycle_rules : r.action == "Delete" || (r.action == "SetStorageClass" && r.storage_class != null)
      ]
    ]))
    error_message = "lifecycle_rules[*].action must be Delete, or SetStorageClass with a storage_class."
  }
}

variable "topics" {
  description = "Target topics keyed by topic id, each with its verification subscription and dead-letter topic."
  type = map(object({
    message_retention_days    = number
    verification_subscription = string
    dead_letter_topic         = string
  }))
  default = {}

  validation {
    condition = alltrue([
      for t in values(var.topics) : t.message_retention_days >= 1 && t.message_retention_days <= 31
    ])
    error_message = "topics[*].message_retention_days must be 1..31 (Pub/Sub topic retention limits)."
  }
}

# --- module-only settings -------------------------------------------------------------------

variable "log_bucket" {
  description = "Optional bucket that receives usage/access logs of the target buckets."
  type        = string
  default     = null
}

variable "pubsub_kms_key_name" {
  description = "Optional CMEK key for the topics (must be usable from the topics' message storage regions)."
  type        = string
  default     = null
}

variable "grant_kms_to_service_agents" {
  description = "Grant the GCS service agent encrypt/decrypt on kms_key_name (key-level binding)."
  type        = bool
  default     = true
}

variable "parts_max_age_days" {
  description = "Days after which leftover composite-upload parts (.migrate-parts/) of abandoned runs are deleted."
  type        = number
  default     = 7

  validation {
    condition     = var.parts_max_age_days >= 1
    error_message = "parts_max_age_days must be at least 1 (a run resumed later re-uploads parts that were removed)."
  }
}

variable "ack_deadline_seconds" {
  description = "Ack deadline of the verification subscriptions."
  type        = number
  default     = 60
}

variable "max_delivery_attempts" {
  description = "Deliveries before a verification-subscription message goes to the dead-letter topic (5..100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be 5..100."
  }
}

variable "impersonators" {
  description = "Principals (user:..., group:...) allowed to impersonate the migration service account."
  type        = list(string)
  default     = []
}
