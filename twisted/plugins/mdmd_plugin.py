from twisted.application.service import ServiceMaker

mdmd = ServiceMaker("mdmd", "mdmd.tap", "Windows and OMA DM device-management server", "mdmd")
