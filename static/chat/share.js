// Export and share, in the chat toolbar (filled in by the export and share steps).
export function initTranscriptTools() {
  return { sessionChanged() {} };
}
