// The operators' workbook (Azure portal > Application Insights appi-dsr-… > Workbooks, or Azure
// Monitor > Workbooks): the whole DSR life, from intake, phases in flight, deadlines at risk and
// overdue, failures by code with the fix, Graph errors and throttling, callbacks, retries,
// extensions and deliveries to retention, erasure and the evidence written, all read with
// `parse-kv` from the app's structured log lines (`event key=value key="quoted" …`) in the
// component's `traces` table. docs/operations.md explains every panel and has the same queries
// to paste into Logs; the alert rules over the same lines are alerts.bicep.
//
// The content lives in workbook.json next to this file so that it stays readable and diffable;
// `make test` runs Kusto's own analyzer over its queries (tests/ops) and
// tests/infra/test_workbook.py checks that they read only declared events and fields
// (dsr_export/domain/log_events.py). It reads telemetry only: no identity, no role assignment,
// no secret.

@description('Application Insights component the workbook belongs to and queries.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Title shown in the portal. Unique per resource group and component.')
param displayName string = 'DSR export operations'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// workbook.json names its resource through this placeholder (`fallbackResourceIds`: what the
// queries run against when the workbook is opened outside the component, e.g. from Azure
// Monitor > Workbooks). Filled in here so the file holds no subscription or resource group.
var resourcePlaceholder = '__APPLICATION_INSIGHTS_ID__'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; derived from the component so re-deploying updates it.
  name: guid(appInsights.id, 'dsr-export-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: replace(loadTextContent('workbook.json'), resourcePlaceholder, appInsights.id)
    version: 'Notebook/1.0'
  }
}

output id string = workbook.id
output name string = workbook.name
