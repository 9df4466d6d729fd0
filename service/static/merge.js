// RFC 7386 JSON Merge Patch, applied. There is no build step to bring a library in, and
// the algorithm is a dozen lines (RFC 7386 section 2), so it lives here.

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

// Returns the patched value. `target` is not modified: the result shares the unchanged
// branches with it, so views can compare old and new objects cheaply.
export function applyMergePatch(target, patch) {
  if (!isObject(patch)) return patch; // a non-object patch replaces the target whole
  const result = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]; // null means "remove"
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}
