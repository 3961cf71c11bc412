terraform {
  # optional() attributes in object types need 1.3; 1.5 is the oldest release we test `fmt` with.
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}
