module "migration" {
  source = "../../modules/migration"

  project_id          = var.project_id
  location            = var.location
  labels              = var.labels
  kms_key_name        = var.kms_key_name
  service_account_id  = var.service_account_id
  allow_object_delete = var.allow_object_delete
  buckets             = var.buckets
  topics              = var.topics
  impersonators       = var.impersonators
}
