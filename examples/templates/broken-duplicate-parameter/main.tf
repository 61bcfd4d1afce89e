# expect: parameter name "region" is already used by data "coder_parameter" "region"
# block: data "coder_parameter" "region_again"
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

data "coder_parameter" "region_again" {
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

resource "coder_agent" "main" {
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo ${data.coder_parameter.region.value} > \"$HOME/region.txt\""
}

data "coder_workspace_preset" "dev" {
  name = "dev"
  parameters = {
    region = "us"
    size   = 4
  }
}
