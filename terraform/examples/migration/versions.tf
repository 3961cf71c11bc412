terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }

  # Keep state somewhere shared for real waves, for example:
  # backend "gcs" { bucket = "acme-terraform-state", prefix = "migrate" }
}

provider "google" {
  project = var.project_id
}
