// Scheduled log alert rules over the app's structured log lines in Application Insights
// `traces`, one per thing an operator must act on during a DSR's life: a legal deadline passed
// or at risk, intake refused or poisoned, a configuration failure, callbacks that keep
// failing, a DSR with no progress, a submit backlog that outruns Graph's quota. Each rule's query lives in alerts/<rule>.kql next to this
// file (readable, diffable, and checked by Kusto's own analyzer in `make test`: tests/ops);
// docs/operations.md has a runbook entry per rule (what it means, its query, what to do).
//
// Who is told: the action group `actionGroupId` when given, else one created here that e-mails
// `alertEmailAddress`. Without either the rules still fire (portal > Alerts), telling no one.
// Rules split by TenantId and RequestId where a DSR is at stake, so each DSR raises (and
// resolves) its own alert (request ids are unique per tenant only), and by TenantId where a
// tenant's DSRs fail alike (its consent revoked, its quota behind): one tenant's trouble never
// hides, or is hidden by, another's. TenantId is a line's tenant_id, or `home` (the app's own
// tenant) when it carries none.

@description('Application Insights component whose traces the rules query.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Resource id of an existing action group to notify. Empty: create one for alertEmailAddress.')
param actionGroupId string = ''

@description('E-mail address (a team mailbox, not a person) the created action group notifies. Empty with no actionGroupId: no notification.')
param alertEmailAddress string = ''

@description('Hours without a lifecycle line after which a DSR in flight counts as stalled.')
@minValue(2)
@maxValue(36)
param stalledAfterHours int = 6

@description('Create the rules enabled.')
param enabled bool = true

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var createActionGroup = empty(actionGroupId) && !empty(alertEmailAddress)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createActionGroup) {
  name: 'ag-dsr-operations-${uniqueString(appInsights.id)}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'dsrops'
    enabled: true
    emailReceivers: [
      {
        name: 'privacy-operations'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

var notify = empty(actionGroupId) ? (createActionGroup ? [actionGroup.id] : []) : [actionGroupId]

// The stalled rule's threshold is a KQL `let` in its file, replaced here with the parameter.
var stalledDefault = 'let stalledAfter = 6h;'

// name, severity (0 critical .. 4 verbose), how often it runs, the window it reads, its query,
// the dimensions it splits by, and a description that points at the runbook.
var rules = [
  {
    name: 'dsr-overdue'
    severity: 1
    frequency: 'PT1H'
    window: 'PT1H'
    timeRange: ''
    query: loadTextContent('alerts/dsr-overdue.kql')
    dimensions: ['TenantId', 'RequestId']
    description: 'A DSR passed its legal deadline. Runbook: docs/operations.md#alert-dsr-overdue'
  }
  {
    name: 'dsr-deadline-at-risk'
    severity: 2
    frequency: 'PT1H'
    window: 'PT1H'
    timeRange: ''
    query: loadTextContent('alerts/dsr-deadline-at-risk.kql')
    dimensions: ['TenantId', 'RequestId']
    description: 'A DSR is days from its legal deadline and not done. Runbook: docs/operations.md#alert-dsr-deadline-at-risk'
  }
  {
    name: 'intake-refused'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    timeRange: ''
    query: loadTextContent('alerts/intake-refused.kql')
    dimensions: ['Event']
    description: 'A dsr-requests message was rejected or poisoned. Runbook: docs/operations.md#alert-intake-refused'
  }
  {
    name: 'configuration-failures'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    timeRange: ''
    query: loadTextContent('alerts/configuration-failures.kql')
    dimensions: ['TenantId', 'Event']
    description: 'A setting, the export storage or Graph permissions fail DSRs. Runbook: docs/operations.md#alert-configuration-failures'
  }
  {
    name: 'callbacks-failing'
    severity: 3
    frequency: 'PT1H'
    window: 'PT1H'
    timeRange: ''
    query: loadTextContent('alerts/callbacks-failing.kql')
    dimensions: ['TenantId', 'RequestId']
    description: 'Ticket callbacks keep failing. Runbook: docs/operations.md#alert-callbacks-failing'
  }
  {
    name: 'submit-backlog-behind'
    severity: 2
    frequency: 'PT1H'
    window: 'PT1H'
    timeRange: ''
    query: loadTextContent('alerts/submit-backlog-behind.kql')
    dimensions: ['TenantId']
    description: 'A DSR waits for a submit slot after its legal deadline: the backlog outruns Graph\'s quota. Runbook: docs/operations.md#alert-submit-backlog-behind'
  }
  {
    name: 'dsr-stalled'
    severity: 2
    frequency: 'PT1H'
    window: 'PT1H'
    // The query looks back two days itself (ago(2d)): a DSR stalls over hours, not within one
    // evaluation window.
    timeRange: 'P2D'
    query: replace(loadTextContent('alerts/dsr-stalled.kql'), stalledDefault, 'let stalledAfter = ${stalledAfterHours}h;')
    dimensions: ['TenantId', 'RequestId']
    description: 'A DSR in flight made no progress for ${stalledAfterHours} hours. Runbook: docs/operations.md#alert-dsr-stalled'
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'dsr-${rule.name}-${uniqueString(appInsights.id)}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: 'DSR export: ${rule.name}'
      description: rule.description
      severity: rule.severity
      enabled: enabled
      scopes: [
        appInsights.id
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      overrideQueryTimeRange: empty(rule.timeRange) ? null : rule.timeRange
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            dimensions: [
              for dimension in rule.dimensions: {
                name: dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      // Resolve on its own once the query no longer finds the DSR (or the event).
      autoMitigate: true
      actions: {
        actionGroups: notify
      }
    }
  }
]

output ruleNames array = [for (rule, i) in rules: alertRules[i].name]
output actionGroupId string = empty(actionGroupId) ? (createActionGroup ? actionGroup.id : '') : actionGroupId
