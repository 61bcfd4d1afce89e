# expect: preset parameter "project": project names are lowercase (value "My Project" does not match "^[a-z-]+$")
# block: data "coder_workspace_preset" "dev"
terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

data "coder_workspace" "me" {}

data "coder_workspace_owner" "me" {}

data "coder_parameter" "region" {
  name    = "region"
  type    = "string"
  default = "eu"

  option {
    name  = "Europe"
    value = "eu"
  }

  option {
    name  = "United States"
    value = "us"
  }
}

data "coder_parameter" "size" {
  name    = "size"
  type    = "number"
  default = 2

  validation {
    min = 1
    max = 8
  }
}

data "coder_parameter" "project" {
  name    = "project"
  default = "demo"

  validation {
    regex = "^[a-z-]+$"
    error = "project names are lowercase"
  }
}

resource "coder_agent" "main" {
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo ${data.coder_parameter.region.value} > \"$HOME/region.txt\""
}

data "coder_workspace_preset" "dev" {
  name = "dev"
  parameters = {
    project = "My Project"
  }
}
