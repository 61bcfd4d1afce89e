# expect: preset parameter "size": value "large" is not a number
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

resource "coder_agent" "main" {
  os             = "linux"
  arch           = "amd64"
  startup_script = "echo ${data.coder_parameter.region.value} > \"$HOME/region.txt\""
}

data "coder_workspace_preset" "dev" {
  name = "dev"
  parameters = {
    size = "large"
  }
}
