terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

data "coder_workspace" "me" {}

data "coder_workspace_owner" "me" {}

data "coder_parameter" "greeting" {
  name         = "greeting"
  display_name = "Greeting"
  description  = "What the startup script writes to ~/greeting.txt."
  type         = "string"
  default      = "hello"
  mutable      = true
  order        = 1
}

data "coder_parameter" "size" {
  name         = "size"
  display_name = "Size"
  description  = "A number the startup script records (1-8)."
  type         = "number"
  default      = 1
  mutable      = false
  order        = 2

  validation {
    min = 1
    max = 8
  }
}

locals {
  greeting_file = "$HOME/greeting.txt"
}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  dir  = "$HOME"

  # The local runtime runs this with `sh`, HOME set to the workspace directory.
  startup_script = <<-EOT
    set -e
    echo "${data.coder_parameter.greeting.value} ${data.coder_workspace_owner.me.name}" > "${local.greeting_file}"
    echo "workspace=${data.coder_workspace.me.name} size=${data.coder_parameter.size.value}" > "$HOME/workspace.txt"
  EOT

  env = {
    GREETING       = data.coder_parameter.greeting.value
    WORKSPACE_NAME = data.coder_workspace.me.name
  }

  metadata {
    key          = "greeting"
    display_name = "Greeting file"
    script       = "cat \"$HOME/greeting.txt\""
    interval     = 10
    timeout      = 1
  }

  # The script and env name the owner and the workspace, which change when a prebuilt workspace is
  # claimed. Ignoring them keeps the prebuild's running agent (no replacement reported); the claimed
  # workspace's greeting file keeps the name it was prebuilt with.
  lifecycle {
    ignore_changes = [startup_script, env]
  }
}

resource "coder_app" "greeting" {
  agent_id     = coder_agent.main.id
  slug         = "greeting"
  display_name = "Greeting"
  command      = "cat \"$HOME/greeting.txt\""
  icon         = "/icon/terminal.svg"
  share        = "owner"
}

# Stands for the workspace's home directory. Its triggers name the owner, which changes when a
# prebuilt workspace is claimed; ignore_changes keeps that from counting as a replacement.
resource "null_resource" "home" {
  count = data.coder_workspace.me.start_count

  triggers = {
    owner     = data.coder_workspace_owner.me.name
    workspace = data.coder_workspace.me.name
  }

  depends_on = [coder_agent.main]

  lifecycle {
    ignore_changes = [triggers]
  }
}

data "coder_workspace_preset" "small" {
  name        = "small"
  description = "A small workspace, built on demand."
  parameters = {
    (data.coder_parameter.greeting.name) = "hi"
    "size"                               = 1
  }
}

data "coder_workspace_preset" "prebuilt" {
  name        = "prebuilt"
  description = "Kept ready: two prebuilt workspaces, three during working hours."
  default     = true

  parameters {
    greeting = "hello"
    size     = 2
  }

  prebuilds {
    instances = 2

    expiration_policy {
      ttl = 86400
    }

    scheduling {
      timezone = "UTC"

      schedule {
        cron      = "* 8-18 * * 1-5"
        instances = 3
      }
    }
  }
}
