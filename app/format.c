#include "format.h"

#include <math.h>
#include <string.h>

char *
peer_format_count (double value)
{
  if (!isfinite (value))
    return g_strdup ("–");
  long long whole = llround (fabs (value));
  g_autofree char *digits = g_strdup_printf ("%lld", whole);
  GString *text = g_string_new (value < 0 && whole != 0 ? "−" : "");
  gsize length = strlen (digits);
  for (gsize i = 0; i < length; i++)
    {
      if (i > 0 && (length - i) % 3 == 0)
        g_string_append_c (text, ',');
      g_string_append_c (text, digits[i]);
    }
  return g_string_free (text, FALSE);
}

char *
peer_format_si (double value)
{
  static const char *const prefixes[] = { "", " k", " M", " G", " T", " P", " E" };
  if (!isfinite (value))
    return g_strdup ("–");
  double magnitude = fabs (value);
  guint index = 0;
  while (magnitude >= 999.5 && index + 1 < G_N_ELEMENTS (prefixes))
    {
      magnitude /= 1000.0;
      value /= 1000.0;
      index++;
    }
  int decimals = magnitude >= 99.95 || index == 0 ? 0 : magnitude >= 9.995 ? 1 : 2;
  if (index == 0 && magnitude < 10 && magnitude != floor (magnitude))
    decimals = 2;
  return g_strdup_printf ("%.*f%s", decimals, value, prefixes[index]);
}

char *
peer_format_duration (double seconds)
{
  if (!isfinite (seconds) || seconds < 0)
    return g_strdup ("–");
  long total = lround (seconds);
  if (total < 60)
    return g_strdup_printf ("%ld s", total);
  if (total < 3600)
    return g_strdup_printf ("%ld min %02ld s", total / 60, total % 60);
  return g_strdup_printf ("%ld h %02ld min", total / 3600, (total % 3600) / 60);
}
