-- The original tool's setup SQL, verbatim from its README's Quick Start (step 2),
-- kept byte for byte below this header (tests/quick_start.rs checks it against
-- docs/original-tool-readme.md). It is not idempotent: the compose stack's init
-- runs it only when the database testct does not exist yet.
-- 1. Create Database
CREATE DATABASE testct;
GO

-- Enable Service Broker (Required for DDL Event Notifications)
ALTER DATABASE testct SET ENABLE_BROKER WITH ROLLBACK IMMEDIATE;
GO

USE testct;
GO

-- 2. Enable Change Tracking on Database
ALTER DATABASE testct
SET CHANGE_TRACKING = ON
(CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);
GO

-- 3. Create Table & Enable Change Tracking
CREATE TABLE [User] (
    id BIGINT PRIMARY KEY,
    username VARCHAR(100),
    email VARCHAR(100)
);
GO

CREATE TABLE [Customer] (
    CustomerId int IDENTITY(1,1) NOT NULL,
    ExternalCode nvarchar(50) NOT NULL,
    FullName nvarchar(200) NOT NULL,
    Email nvarchar(200) NULL,
    Status tinyint DEFAULT 1 NOT NULL,
    CreatedAt datetime2(0) DEFAULT sysutcdatetime() NOT NULL,
    UpdatedAt datetime2(0) NULL,
    PRIMARY KEY (CustomerId),
    UNIQUE (ExternalCode)
);
GO

CREATE TABLE [Product] (
    id bigint NOT NULL,
    Name text NULL,
    Category varchar(100) NULL,
    Price numeric(10,2) NULL,
    PRIMARY KEY (id)
);
GO

ALTER TABLE [User]
ENABLE CHANGE_TRACKING
WITH (TRACK_COLUMNS_UPDATED = ON);
GO

ALTER TABLE [Product]
ENABLE CHANGE_TRACKING
WITH (TRACK_COLUMNS_UPDATED = ON);
GO

-- 4. Setup DDL Event Capture (For handling column renames/drops safely)
CREATE QUEUE SyncDDLQueue;
GO

CREATE SERVICE SyncDDLService 
ON QUEUE SyncDDLQueue 
([http://schemas.microsoft.com/SQL/Notifications/PostEventNotification]);
GO

CREATE EVENT NOTIFICATION SyncDDLEvents
ON DATABASE
FOR DDL_TABLE_EVENTS, RENAME
TO SERVICE 'SyncDDLService', 'current database';
GO
