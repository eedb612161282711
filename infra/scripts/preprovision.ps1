# azd preprovision hook (Windows): same as preprovision.sh. Generates the callback signing
# secret once and keeps it in the azd environment; Bicep stores it in Key Vault.
$ErrorActionPreference = 'Stop'

$current = azd env get-value CALLBACK_SIGNING_SECRET 2>$null
if ($LASTEXITCODE -eq 0 -and $current) {
  Write-Host 'CALLBACK_SIGNING_SECRET: already set in the azd environment, kept'
  exit 0
}

$bytes = New-Object byte[] 32
[System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
$secret = 'whsec_' + [Convert]::ToBase64String($bytes)
azd env set CALLBACK_SIGNING_SECRET $secret | Out-Null
Write-Host 'CALLBACK_SIGNING_SECRET: generated (Standard Webhooks format, 32 random bytes)'
